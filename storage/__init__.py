"""S3 access through the minio client."""
