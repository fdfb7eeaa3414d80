"""MP4 video: encoding (for the writer) and frame decoding at timestamps (for the dataset)."""
