"""What S3 holds of a cluster: the store (I/O), the key layout (pure), a cluster's folder."""
