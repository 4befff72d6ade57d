"""``lgdeploy build``: the pipeline as a list of small stages (:mod:`.stages`) chained by :func:`.pipeline.build`,
with its resumable work directory (:mod:`.workdir`). Only the command line imports this package.
"""
