"""Procedural training and evaluation tasks: lab.tasks.registry names the families (one module
each under families/), episode.py the episode, batch.py the training batches."""
