"""``python -m learngene_deploy`` is the same as ``lgdeploy``."""

from learngene_deploy.cli import main

main()
