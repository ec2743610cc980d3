import numpy as np, scipy.io as sio
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
src='/work/real/raw/mitoem'; R='/work/real'
crops={}
for z in ['0001','0030','0060','0116','0150']:
    im=np.array(Image.open(f'{src}/ROI_6005_4739_81_z{z}.tif')); m=sio.loadmat(f'{src}/GT_ROI_6005_4739_81_z{z}.mat')['groundTruthM']
    u=(m>0).any(2); ys,xs=np.nonzero(u)
    x0=max(0,xs.min()-60); x1=min(2000,xs.max()+61); y0=max(0,ys.min()-60); y1=min(2000,ys.max()+61)
    crops[z]=(x0,y0,x1,y1)
    boxes=[]
    for k in range(m.shape[2]):
        c=m[y0:y1,x0:x1,k]>0
        if not c.any(): continue
        lab,n=ndi.label(c, structure=np.ones((3,3)))
        sizes=ndi.sum(c,lab,range(1,n+1)); objs=ndi.find_objects(lab)
        if n>1: print(z,k,'components',[int(s) for s in sizes],[ (o[1].start,o[0].start,o[1].stop,o[0].stop) for o in objs])
        for i,(s,o) in enumerate(zip(sizes,objs)):
            if s<50: continue
            boxes.append((o[1].start+1,o[0].start+1,o[1].stop,o[0].stop))
    name=f'hela_sbfsem_z{z}'
    crop=im[y0:y1,x0:x1]; H,W=crop.shape
    xml=[f'<annotation><filename>{name}.png</filename><size><width>{W}</width><height>{H}</height><depth>1</depth></size>']
    for b in boxes:
        t=int(b[0]==1 or b[1]==1 or b[2]==W or b[3]==H)
        xml.append(f'<object><name>mitochondria</name><truncated>{t}</truncated><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>')
    xml.append('</annotation>')
    open(f'{R}/annotations/{name}.xml','w').write('\n'.join(xml)+'\n')
    print(z,(x0,y0,x1,y1),(W,H),len(boxes))
