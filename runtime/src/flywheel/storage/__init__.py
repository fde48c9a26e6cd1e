"""Where bytes live: URIs to pyarrow filesystems, and publishing a directory atomically."""
