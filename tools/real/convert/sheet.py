import sys, math
from PIL import Image, ImageDraw
out=sys.argv[1]; files=sys.argv[2:]
T=300; cols=4; rows=math.ceil(len(files)/cols)
sh=Image.new('RGB',(cols*T,rows*(T+14)),'white'); d=ImageDraw.Draw(sh)
for i,f in enumerate(files):
    im=Image.open(f); s=im.size; im=im.convert('RGB'); im.thumbnail((T,T))
    x=(i%cols)*T; y=(i//cols)*(T+14); sh.paste(im,(x,y+14)); d.text((x+2,y+1),f"{i}:{f.split('/')[-1][:30]} {s[0]}x{s[1]}",fill='black')
sh.save(out)
