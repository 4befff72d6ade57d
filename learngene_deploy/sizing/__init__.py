"""Size selection: predicted memory, latency and accuracy of every size a learngene supports, and the choice.

Pure arithmetic over architecture specs and profile facts; nothing here imports torch.
"""
