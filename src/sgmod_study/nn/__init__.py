"""The networks: Sgmod and the other activations (with the fused Sgmod op), norms, the models built
from them, and the feature network the GAN's FID uses. activation_configs reads activation configs
without torch."""
