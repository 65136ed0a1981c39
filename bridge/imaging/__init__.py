"""Image handling below the nodes: formats and limits, digests, look signatures, plate crops, annotation."""
