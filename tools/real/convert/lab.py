"""Label helper: python3 lab.py NAME 'x1,y1,x2,y2,trunc,diff;...' [zoom x0,y0,x1,y1]
writes annotations/NAME.xml and tmp/NAME_box.png (1-based inclusive coords)."""
import sys
from PIL import Image, ImageDraw
R='/work/real'
name=sys.argv[1]; spec=sys.argv[2]
im=Image.open(f'{R}/images/{name}.png'); W,H=im.size
objs=[]
for s in spec.split(';'):
    s=s.strip()
    if not s: continue
    v=[int(t) for t in s.split(',')]
    x1,y1,x2,y2=[max(1,v[0]),max(1,v[1]),min(W,v[2]),min(H,v[3])]
    objs.append((x1,y1,x2,y2,v[4] if len(v)>4 else 0,v[5] if len(v)>5 else 0))
xml=[f'<annotation><filename>{name}.png</filename><size><width>{W}</width><height>{H}</height><depth>1</depth></size>']
for o in objs:
    xml.append(f'<object><name>mitochondria</name><truncated>{o[4]}</truncated><difficult>{o[5]}</difficult><bndbox><xmin>{o[0]}</xmin><ymin>{o[1]}</ymin><xmax>{o[2]}</xmax><ymax>{o[3]}</ymax></bndbox></object>')
xml.append('</annotation>')
open(f'{R}/annotations/{name}.xml','w').write('\n'.join(xml)+'\n')
rgb=im.convert('RGB'); d=ImageDraw.Draw(rgb)
for o in objs:
    d.rectangle([o[0]-1,o[1]-1,o[2]-1,o[3]-1],outline=(255,0,0) if not o[5] else (255,160,0),width=max(1,W//500))
if len(sys.argv)>3:
    z=[int(t) for t in sys.argv[3].split(',')]; rgb=rgb.crop(z)
    if rgb.size[0]<500: rgb=rgb.resize((rgb.size[0]*2,rgb.size[1]*2),Image.NEAREST)
rgb.save(f'{R}/tmp/{name}_box.png'); print(name,W,H,len(objs))
