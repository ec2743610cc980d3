import sys, glob, os, math
import xml.etree.ElementTree as ET
from PIL import Image, ImageDraw
R='/work/real'; out=sys.argv[1] if len(sys.argv)>1 else f'{R}/contact.png'
names=sorted(os.path.basename(f)[:-4] for f in glob.glob(f'{R}/images/*.png'))
T=360; cols=5; rows=math.ceil(len(names)/cols)
sh=Image.new('RGB',(cols*T,rows*(T+16)),'white'); dd=ImageDraw.Draw(sh)
for i,n in enumerate(names):
    im=Image.open(f'{R}/images/{n}.png').convert('RGB'); W,H=im.size; d=ImageDraw.Draw(im)
    objs=ET.parse(f'{R}/annotations/{n}.xml').findall('object')
    lw=max(2,int(max(W,H)/T*1.5))
    for o in objs:
        b=[int(o.find('bndbox/'+k).text) for k in ['xmin','ymin','xmax','ymax']]
        dif=o.find('difficult').text=='1'
        d.rectangle([b[0]-1,b[1]-1,b[2]-1,b[3]-1],outline=(255,160,0) if dif else (255,0,0),width=lw)
    im.thumbnail((T,T)); x=(i%cols)*T; y=(i//cols)*(T+16)
    sh.paste(im,(x,y+16)); dd.text((x+2,y+2),f'{n[:44]} ({len(objs)})',fill='black')
sh.save(out); print(out, len(names))
