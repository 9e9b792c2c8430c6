"""The .vcwc file format: container (header, metadata, blobs), typed metadata schema, frame layout and
size accounting. Pure Python and numpy: reading a file's description needs no torch and no ffmpeg."""
