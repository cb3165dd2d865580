"""Make the test photos in every format facedex decodes, from the sample photos, with real
encoders (Pillow with its libavif, tifffile, imagecodecs' libjxl, and pillow-heif's libheif with
x265), into ASSETS/formats/.

Each file holds the picture of its JPEG source as a user's tool would store it: TIFF 8- and
16-bit (tifffile), multi-page (the photo first), and rotated with an Orientation tag; GIF, APNG and WebP
animations whose first frame is the photo; BMP; JPEG XL; HEIC, upright and stored rotated with
an irot transformation (as iPhones store portrait photos); AVIF; DNG, a camera RAW laid out as
converters write it (tifffile): a thumbnail, the full-size JPEG preview (libjpeg-turbo through
imagecodecs) and 16-bit colour-filter-array sensor data, upright and stored rotated with IFD0's
Orientation 6. No registry package ships a camera's own RAW file; CR2, NEF and ARW layouts are
unit tests of the decoder. A manifest (formats.json) says which
source each file comes from and how it was made; the tests check that each gives its source's
faces.
"""

import argparse
import json
from pathlib import Path

import imagecodecs
import numpy as np
import pillow_heif
import tifffile
from PIL import Image

pillow_heif.register_heif_opener()

SOURCE = "t1.jpg"


def second_frame(picture: Image.Image) -> Image.Image:
    """A frame unlike the first (the photo upside down, darkened), so decoding the wrong one shows."""
    return Image.eval(picture.rotate(180), lambda value: value // 3)


def write_dng(path: Path, picture: Image.Image, orientation: int) -> None:
    """A DNG as converters lay it out: IFD0 a thumbnail with the DNG tags, then two sub-IFDs:
    the full-size JPEG preview (one strip) and the sensor data (a 2x2 RGGB colour filter array)."""
    preview = np.asarray(picture)
    height, width = preview.shape[:2]
    thumbnail = np.asarray(picture.resize((256, round(256 * height / width))))
    sensor = np.asarray(picture.convert("L"), dtype=np.uint16) * 16
    dng_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (274, "H", 1, orientation, True),  # Orientation
        (271, "s", 0, "facedex make_photos", True),  # Make
    ]
    with tifffile.TiffWriter(path) as tif:
        tif.write(thumbnail, photometric="rgb", subfiletype=1, subifds=2, extratags=dng_tags)
        tif.write(
            preview,
            photometric="rgb",
            subfiletype=1,
            compression="jpeg",
            compressionargs={"level": 90},
            rowsperstrip=height,
        )
        cfa_tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
        tif.write(sensor, photometric=32803, subfiletype=0, extratags=cfa_tags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=Path, required=True)
    args = parser.parse_args()
    photos = args.assets / "photos"
    out = args.assets / "formats"
    out.mkdir(parents=True, exist_ok=True)
    picture = Image.open(photos / SOURCE).convert("RGB")
    pixels = np.asarray(picture)
    made = {}

    def note(name: str, how: str) -> None:
        made[name] = {"source": SOURCE, "how": how}

    picture.save(out / "t1.tif", compression="tiff_lzw")
    note("t1.tif", "Pillow, 8-bit RGB, LZW")
    wide = pixels.astype(np.uint16) * 257
    tifffile.imwrite(out / "t1-16bit.tif", wide, photometric="rgb", compression="zlib")
    note("t1-16bit.tif", "tifffile, 16-bit RGB, deflate")
    # Stored turned a quarter counter-clockwise; Orientation 6 says: turn clockwise to show.
    stored = picture.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(out / "t1-orientation6.tif", exif=exif)
    note("t1-orientation6.tif", "Pillow, stored rotated, Orientation 6")
    picture.save(out / "t1-multipage.tif", save_all=True, append_images=[second_frame(picture)])
    note("t1-multipage.tif", "Pillow, two pages, the photo first")

    frames = [picture, second_frame(picture)]
    gif_frames = [frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT) for frame in frames]
    gif_frames[0].save(out / "t1.gif", save_all=True, append_images=gif_frames[1:], duration=500, loop=0)
    note("t1.gif", "Pillow, animated, 256-colour median cut, the photo first")
    # The palette loses detail the other formats keep: the GIF's own first frame, as Pillow
    # reads it back, stored losslessly, is the reference its decoding must match exactly.
    with Image.open(out / "t1.gif") as gif:
        gif.seek(0)
        gif.convert("RGB").save(out / "t1.gif-frame0.png")
    made["t1.gif-frame0.png"] = {"source": "t1.gif", "how": "Pillow, the GIF's first frame as RGB PNG"}
    frames[0].save(out / "t1.apng", format="PNG", save_all=True, append_images=frames[1:], duration=500)
    note("t1.apng", "Pillow, animated PNG, the photo first")
    frames[0].save(out / "t1-animated.webp", save_all=True, append_images=frames[1:], duration=500, lossless=True)
    note("t1-animated.webp", "Pillow (libwebp), animated, lossless, the photo first")
    picture.save(out / "t1.bmp")
    note("t1.bmp", "Pillow, 24-bit BMP")
    (out / "t1.jxl").write_bytes(imagecodecs.jpegxl_encode(pixels, distance=1.0, effort=7))
    note("t1.jxl", "libjxl (imagecodecs), lossy, distance 1.0")
    (out / "t1-lossless.jxl").write_bytes(imagecodecs.jpegxl_encode(pixels, lossless=True, effort=3))
    note("t1-lossless.jxl", "libjxl (imagecodecs), lossless")

    picture.save(out / "t1.heic", quality=90)
    note("t1.heic", "pillow-heif (libheif, x265), quality 90")
    # Stored turned a quarter counter-clockwise; pillow-heif turns the EXIF Orientation 6 into
    # the container's irot transformation, which decoders apply.
    stored.save(out / "t1-irot.heic", quality=90, exif=exif.tobytes())
    note("t1-irot.heic", "pillow-heif (libheif, x265), stored rotated, irot from Orientation 6")
    picture.save(out / "t1.avif", quality=90)
    note("t1.avif", "Pillow (libavif), quality 90")

    write_dng(out / "t1.dng", picture, 1)
    note("t1.dng", "tifffile, DNG layout: thumbnail, JPEG preview (libjpeg-turbo, quality 90), CFA data")
    write_dng(out / "t1-orientation6.dng", stored, 6)
    note("t1-orientation6.dng", "tifffile, DNG layout, stored rotated, IFD0 Orientation 6")

    (out / "formats.json").write_text(json.dumps(made, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
