"""Training: one loop (``loop``) for learngenes and fine-tuning, teachers, fine-tuning and the learngene recipes.

Importing the package itself imports nothing heavy; import the module you need (``learngene_deploy.training.loop``
and the others import torch).
"""
