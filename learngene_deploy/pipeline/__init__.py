"""``lgdeploy build`` / ``learngene_deploy.build``: the pipeline as a list of small stages (:mod:`.stages`) chained
by :func:`.run.build`, with its options (:mod:`.options`) and resumable work directory (:mod:`.workdir`).

Not named ``build``: a subpackage of that name would replace the public :func:`learngene_deploy.build` function
as an attribute of the package as soon as it is imported.
"""
