import numpy as np, scipy.io as sio, sys
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
src='/work/real/raw/mitoem'
out=[]
for z in ['0001','0030','0060','0116','0150']:
    im=np.array(Image.open(f'{src}/ROI_6005_4739_81_z{z}.tif')); m=sio.loadmat(f'{src}/GT_ROI_6005_4739_81_z{z}.mat')['groundTruthM']
    u=(m>0).any(2); ys,xs=np.nonzero(u)
    x0=max(0,xs.min()-60); x1=min(2000,xs.max()+61); y0=max(0,ys.min()-60); y1=min(2000,ys.max()+61)
    crop=im[y0:y1,x0:x1]
    boxes=[]
    for k in range(m.shape[2]):
        c=m[y0:y1,x0:x1,k]>0
        if not c.any(): continue
        lab,n=ndi.label(c)
        sizes=ndi.sum(c,lab,range(1,n+1))
        # one instance per channel: bbox of the whole channel (ignore specks < 20 px)
        keep=np.isin(lab, [i+1 for i,s in enumerate(sizes) if s>=20])
        yy,xx=np.nonzero(keep)
        boxes.append((xx.min()+1,yy.min()+1,xx.max()+1,yy.max()+1, n))
    print(z,(x0,y0,x1,y1),crop.shape,len(boxes),[b[4] for b in boxes if b[4]>1])
    name=f'hela_sbfsem_z{z}'
    Image.fromarray(crop).save(f'/work/real/images/{name}.png')
    np.save(f'/work/real/tmp/{name}_boxes.npy',np.array([b[:4] for b in boxes]))
    # outline overlay
    rgb=Image.fromarray(crop).convert('RGB'); d=ImageDraw.Draw(rgb)
    uc=u[y0:y1,x0:x1]; e=uc & ~ndi.binary_erosion(uc)
    a=np.array(rgb); a[e]=[0,255,0]; rgb=Image.fromarray(a); d=ImageDraw.Draw(rgb)
    for b in boxes: d.rectangle([b[0]-1,b[1]-1,b[2]-1,b[3]-1],outline=(255,0,0),width=2)
    rgb.save(f'/work/real/tmp/{name}_ov.png')
