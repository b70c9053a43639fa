"""S3 access through the ``minio`` client: key layout, URIs and the object store."""
