import sys, xml.etree.ElementTree as ET
from PIL import Image, ImageDraw
R='/work/real'; n=sys.argv[1]
im=Image.open(f'{R}/images/{n}.png').convert('RGB'); d=ImageDraw.Draw(im)
for o in ET.parse(f'{R}/annotations/{n}.xml').findall('object'):
    b=[int(o.find('bndbox/'+k).text) for k in ['xmin','ymin','xmax','ymax']]
    d.rectangle([b[0]-1,b[1]-1,b[2]-1,b[3]-1],outline=(255,160,0) if o.find('difficult').text=='1' else (255,0,0),width=2)
W,H=im.size
# grid lines every 100 px labelled, to read coordinates
for x in range(0,W,100): d.line([x,0,x,H],fill=(0,160,255),width=1); d.text((x+2,2),str(x),fill=(0,0,255))
for y in range(0,H,100): d.line([0,y,W,y],fill=(0,160,255),width=1); d.text((2,y+2),str(y),fill=(0,0,255))
hw,hh=W//2,H//2
for i,(x0,y0) in enumerate([(0,0),(hw-40,0),(0,hh-40),(hw-40,hh-40)]):
    im.crop((x0,y0,min(W,x0+hw+40),min(H,y0+hh+40))).save(f'{R}/tmp/{n}_q{i}.png')
print(W,H)
