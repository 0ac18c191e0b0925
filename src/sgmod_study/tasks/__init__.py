"""The trained tasks (LightningModules): the classifier and the GAN, their optimizer parameter
groups, and their checkpoints."""
