"""Artifact stores: content-addressed blobs on a local folder or S3."""
