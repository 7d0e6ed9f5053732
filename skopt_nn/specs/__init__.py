"""What a recipe is: network, optimizer, schedule, pruning and distillation specs.

The bottom layer: nothing here imports the estimators, searches or the command line.
"""
