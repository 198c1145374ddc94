"""Reading and writing the marks that say an image is AI-generated: an invisible watermark in the pixels,
IPTC DigitalSourceType in XMP, and (reading only) a C2PA manifest. Used by the renderer, which writes
them, and by `likeness verify-image`, which reads them."""
