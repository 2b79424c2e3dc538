"""Audio: decoding any format, resampling to the feature rate, streaming features."""

__all__ = ["decoding", "features", "ingest"]
