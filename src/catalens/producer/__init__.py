"""The producer: catalog files → product-image events on ``catalens.product-images``."""
