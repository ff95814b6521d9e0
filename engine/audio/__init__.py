"""Audio in and out: device capture, format conversion, frames for the VAD, levels."""
