"""hnm: ensemble hard-negative mining for retrieval training (arXiv 2411.02404), written from scratch."""

__version__ = "0.1.0"
