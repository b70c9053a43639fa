"""Where models come from: the catalog of sources and the CTranslate2 converter."""
