"""What a training run needs besides the network: strategies, the best checkpoint, weight checks."""
