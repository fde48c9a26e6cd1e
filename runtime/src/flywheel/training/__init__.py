"""Training: TrainingJob -> a model trained with Ray Train, evaluated, gated and registered."""
