"""The trained tasks (LightningModules) and their registry: the classifier, the GAN (its losses,
FID/KID metrics and divergence check in modules of their own), their optimizer parameter groups,
and their checkpoints."""
