"""Model construction: every model the toolkit produces is a plain timm VisionTransformer."""
