"""MP4 video: encoding (for the writer) and frame decoding at timestamps (for the dataset)."""

from robotempo.video.decoder import FrameFetcher, VideoDecoderCache, decode_frames
from robotempo.video.encoder import VideoEncoder, available_codecs, encode_video

__all__ = [
    "FrameFetcher",
    "VideoDecoderCache",
    "VideoEncoder",
    "available_codecs",
    "decode_frames",
    "encode_video",
]
