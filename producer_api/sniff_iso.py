"""Tell audio from images among ISO base media files, by the brands of their ``ftyp`` box.

MP4, M4A, 3GP and QuickTime share their container with HEIF (HEIC) and AVIF images and
with Canon's CR3 raw images, so the ``ftyp`` magic alone says nothing. The box names a
major brand and a list of compatible brands (the registered ones are at mp4ra.org).
An image brand anywhere in the box means an image, even beside a generic brand such as
'isom' (CR3 lists one); otherwise a known audio or video brand means media that may
carry audio; an unknown brand alone is refused rather than guessed.

The detector libraries were tried first: filetype 1.2 takes a CR3 for MP4 video and
puremagic 1.30 ranks an AVIF as MP4 video and does not recognise a 'mif1' HEIC at all.
"""

from __future__ import annotations

from typing import NamedTuple


class IsoKind(NamedTuple):
    is_audio: bool
    kind: str
    content_type: str


_HEIC = IsoKind(False, "a HEIC image", "image/heic")
_AVIF = IsoKind(False, "an AVIF image", "image/avif")
_HEIF = IsoKind(False, "a HEIF image", "image/heif")
_CR3 = IsoKind(False, "a Canon raw image (CR3)", "image/x-canon-cr3")

# Brands that name the image codec come before the generic HEIF structure brands.
_IMAGE_BRANDS: dict[bytes, IsoKind] = {
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"), _HEIC),
    **dict.fromkeys((b"hevm", b"hevs"), _HEIC),
    **dict.fromkeys((b"avif", b"avis", b"avio"), _AVIF),
    b"crx ": _CR3,
}
_GENERIC_IMAGE_BRANDS = frozenset((b"mif1", b"mif2", b"msf1", b"miaf"))

_M4A = IsoKind(True, "M4A audio", "audio/mp4")
_MP4 = IsoKind(True, "MP4 media", "video/mp4")
_3GPP = IsoKind(True, "3GPP media", "video/3gpp")
_3GPP2 = IsoKind(True, "3GPP2 media", "video/3gpp2")
_QUICKTIME = IsoKind(True, "QuickTime media", "video/quicktime")

_MEDIA_BRANDS: dict[bytes, IsoKind] = {
    **dict.fromkeys((b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "), _M4A),
    **dict.fromkeys([f"3gp{n}".encode() for n in range(4, 10)], _3GPP),
    **dict.fromkeys((b"3ge6", b"3ge7", b"3ge9", b"3gg6", b"3gr6", b"3gs6", b"3gs9"), _3GPP),
    **dict.fromkeys((b"3gh9", b"3gm9", b"3gt8", b"3gt9"), _3GPP),
    **dict.fromkeys((b"3g2a", b"3g2b", b"3g2c"), _3GPP2),
    b"qt  ": _QUICKTIME,
    **dict.fromkeys([b"isom"] + [f"iso{n}".encode() for n in range(2, 10)], _MP4),
    **dict.fromkeys((b"mp41", b"mp42", b"mp71", b"avc1", b"M4V ", b"M4VH", b"M4VP"), _MP4),
    **dict.fromkeys((b"F4V ", b"F4P ", b"dash", b"msdh", b"msix", b"cmfc", b"cmf2"), _MP4),
    **dict.fromkeys((b"mmp4", b"MSNV", b"XAVC", b"kddi", b"KDDI", b"CAEP", b"caqv"), _MP4),
}


def classify_ftyp(head: bytes) -> IsoKind:
    """Classify a file whose bytes 4 to 8 are ``ftyp``, by the brands in that box."""
    major = head[8:12]
    brands = [major, *_compatible_brands(head)]
    for brand in brands:
        if brand in _IMAGE_BRANDS:
            return _IMAGE_BRANDS[brand]
    if any(brand in _GENERIC_IMAGE_BRANDS for brand in brands):
        return _HEIF
    for brand in brands:
        if brand in _MEDIA_BRANDS:
            # the major brand names the file; a generic compatible brand only vouches
            return _MEDIA_BRANDS.get(major, _MP4)
    name = major.decode("latin-1")
    return IsoKind(
        False,
        f"an ISO media file of brand {name!r}, not a known audio or video brand",
        "application/octet-stream",
    )


def _compatible_brands(head: bytes) -> list[bytes]:
    size = int.from_bytes(head[:4], "big")
    # size 0 (box runs to the end) and 1 (64-bit size) are legal but never seen for ftyp
    end = min(size if size >= 16 else len(head), len(head))
    return [head[i : i + 4] for i in range(16, end - 3, 4)]
