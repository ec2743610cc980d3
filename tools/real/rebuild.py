"""Rebuild the real evaluation images of tools/real/ (EVALUATION ONLY: never train or tune on them).

Reads each source file of PROVENANCE.md, either from the fetched bare git dirs
(MIRROR/OWNER+NAME/repo, as the search tool's `fetch` leaves them; `git show COMMIT:PATH`) or
from a directory of raw files laid out as RAW/OWNER+NAME/PATH; crops it as PROVENANCE.md states
(left, top, right, bottom; right/bottom exclusive; no resampling), converts it to 8-bit grey
(PIL `convert('L')`, alpha dropped) and writes

    OUT/images/NAME.png      no pixel size
    OUT/images_px/NAME.png   same pixels, pHYs = pixel size of pixel_sizes.csv (none if unknown)

then checks every PNG's size against annotations/NAME.xml and that its boxes (1-based inclusive)
fall inside. Exit status 1 if a source is missing or a check fails.

    python3 tools/real/rebuild.py --mirror /work/.mirror --out /work/real
    python3 tools/real/rebuild.py --raw /work/real/raw --out /work/real [--save-raw DIR]

The HeLa crops are the bounding box of the labelled cell + 60 px (convert/hela2.py, from the
GT_*.mat masks); the CEM patches are used whole. The annotations are not regenerated here
(convert/hela2.py and convert/cem.py derived the source-label boxes; the others are by hand).
"""
import argparse, csv, io, os, subprocess, sys
import xml.etree.ElementTree as ET
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
EASY = ('mgflast+easymode', '8d6955334cf3bb6f38c072b64c90dd463a6da871')
ISO = ('IsoNet-cryoET+IsoNet', '7cfa65cfd711e75028ef0c79e59a5b259a363e14')
TG = ('TomoGuide+TomoGuide.github.io', '402fe50d7908cd62877f56c3d853d8001f758bc8')
CZI = ('chanzuckerberg+cryoet-data-portal', 'f2c3fd51c164bc3344124f6ac4384037a3caf452')
DPC = ('ZauggGroup+DeePiCt', '4a9662933f7302a5402e025d14bec2205fc8ff96')
HELA = ('reyesaldasoro+MitoEM', 'cd406eca2978ea5aa388f1a1d8bc675c6fe1087c')
CEM = ('volume-em+cem-dataset', '3f308d205df54fba0425aa6cb730a2c731aaffe1')

# name: (repo, commit), path in repo, crop box or None (whole file)
SOURCES = {
    'easymode_hsp60_mito': (EASY, 'docs/assets/hsp60_filtering.png', (40, 1, 573, 573)),
    'easymode_l15p5_2': (EASY, 'docs/assets/umich_pom_2.png', (44, 196, 672, 825)),
    'easymode_l4p3': (EASY, 'docs/assets/umich_pom_3.png', (1151, 231, 1503, 583)),
    'easymode_l2p2_4': (EASY, 'docs/assets/umich_pom_3.png', (404, 231, 756, 583)),
    'easymode_l13p2': (EASY, 'docs/assets/umich_pom_0.png', (50, 575, 325, 850)),
    'easymode_l7p3_2': (EASY, 'docs/assets/umich_pom_0.png', (347, 251, 622, 526)),
    'easymode_l18p1_6': (EASY, 'docs/assets/umich_pom_0.png', (50, 251, 325, 526)),
    'isonet_pp676_sirt': (ISO, 'tutorial/figures/pp676_demo.png', (157, 342, 853, 1433)),
    'isonet_synapse_corrected': (ISO, 'tutorial/figures/demo_synapse_corrected.png', (11, 200, 696, 885)),
    'tomoguide_chlamy_mito': (TG, 'docs/imgs/37_mitopoop.png', (145, 5, 639, 500)),
    'tomoguide_chlamy_thylakoid_noMito': (TG, 'docs/imgs/08_cryo7.JPG', (1042, 65, 1881, 954)),
    'czi_chlamy_run15094_noMito': (CZI, 'docs/figures/tomo_top_both.png', (14, 14, 498, 496)),
    'deepict_spombe_noMito': (DPC, 'images/repo-image.001.png', (132, 336, 600, 804)),
    'czi_lysosome_tilt_noMito': (CZI, 'docs/_static/img/raw_tilt_series.png', (20, 20, 1368, 1370)),
    'hela_sbfsem_z0001': (HELA, 'CODE/OriginalImages/ROI_6005_4739_81_z0001.tif', (428, 265, 1617, 1664)),
    'hela_sbfsem_z0030': (HELA, 'CODE/OriginalImages/ROI_6005_4739_81_z0030.tif', (421, 276, 1615, 1701)),
    'hela_sbfsem_z0060': (HELA, 'CODE/OriginalImages/ROI_6005_4739_81_z0060.tif', (482, 341, 1579, 1810)),
    'hela_sbfsem_z0116': (HELA, 'CODE/OriginalImages/ROI_6005_4739_81_z0116.tif', (494, 440, 1496, 1639)),
    'hela_sbfsem_z0150': (HELA, 'CODE/OriginalImages/ROI_6005_4739_81_z0150.tif', (647, 519, 1473, 1491)),
    **{f'cem_mito{i}': (CEM, f'notebooks/example_data/correlation/images/mitochondria{i}.png', None)
       for i in range(1, 6)},
}


def read_source(args, repo, commit, path):
    """Bytes of PATH at COMMIT (mirror) or RAW/repo/PATH; None if absent."""
    if args.raw:
        f = os.path.join(args.raw, repo, path)
        return open(f, 'rb').read() if os.path.isfile(f) else None
    r = subprocess.run(['git', '--git-dir', os.path.join(args.mirror, repo, 'repo'), 'show',
                        f'{commit}:{path}'], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def check(png, xml):
    """List of problems of png against its LabelImg XML (size, boxes inside, 1-based inclusive)."""
    W, H = Image.open(png).size
    root = ET.parse(xml).getroot()
    w, h = int(root.find('size/width').text), int(root.find('size/height').text)
    bad = [] if (w, h) == (W, H) else [f'png {W}x{H} != xml {w}x{h}']
    for o in root.iter('object'):
        x1, y1, x2, y2 = (int(o.find('bndbox/' + k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        if not (1 <= x1 <= x2 <= W and 1 <= y1 <= y2 <= H):
            bad.append(f'box {(x1, y1, x2, y2)} outside {W}x{H}')
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--mirror', help='directory of fetched bare git dirs OWNER+NAME/repo')
    src.add_argument('--raw', help='directory of raw files OWNER+NAME/PATH')
    ap.add_argument('--out', default='/work/real', help='writes OUT/images and OUT/images_px')
    ap.add_argument('--save-raw', help='also keep the source files read, as DIR/OWNER+NAME/PATH')
    args = ap.parse_args()
    px = {r['image']: float(r['pixel_nm']) for r in csv.DictReader(open(os.path.join(HERE, 'pixel_sizes.csv')))}
    for d in ('images', 'images_px'):
        os.makedirs(os.path.join(args.out, d), exist_ok=True)
    missing, bad = [], []
    for name, ((repo, commit), path, box) in SOURCES.items():
        data = read_source(args, repo, commit, path)
        if data is None:
            missing.append(f'{name}: {repo}@{commit[:10]}:{path}')
            continue
        if args.save_raw:
            f = os.path.join(args.save_raw, repo, path)
            os.makedirs(os.path.dirname(f), exist_ok=True)
            open(f, 'wb').write(data)
        im = Image.open(io.BytesIO(data))
        im = (im.crop(box) if box else im).convert('L')
        png = os.path.join(args.out, 'images', name + '.png')
        im.save(png)
        nm = px.get(name)
        im.save(os.path.join(args.out, 'images_px', name + '.png'),
                **({'dpi': (0.0254e9 / nm,) * 2} if nm else {}))
        probs = check(png, os.path.join(HERE, 'annotations', name + '.xml'))
        bad += [f'{name}: {p}' for p in probs]
        print(f'{name:36s} {im.size[0]:5d}x{im.size[1]:<5d} {nm or "-":>5} nm  {"OK" if not probs else "MISMATCH"}')
    print(f'{len(SOURCES) - len(missing)}/{len(SOURCES)} images written to {args.out}/images(_px)')
    for m in missing:
        print('MISSING', m)
    for b in bad:
        print('MISMATCH', b)
    sys.exit(1 if missing or bad else 0)


if __name__ == '__main__':
    main()
