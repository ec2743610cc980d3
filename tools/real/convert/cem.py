import numpy as np
from PIL import Image
from scipy import ndimage as ndi
R='/work/real'
for i in [1,2,3,4,5]:
    im=Image.open(f'{R}/raw/cem/images_mitochondria{i}.png').convert('L'); m=np.array(Image.open(f'{R}/raw/cem/masks_mitochondria{i}.png'))>127
    name=f'cem_mito{i}'
    im.save(f'{R}/images/{name}.png'); W,H=im.size
    lab,n=ndi.label(m); objs=ndi.find_objects(lab); sizes=ndi.sum(m,lab,range(1,n+1))
    xml=[f'<annotation><filename>{name}.png</filename><size><width>{W}</width><height>{H}</height><depth>1</depth></size>']
    for s,o in zip(sizes,objs):
        x1,y1,x2,y2=o[1].start+1,o[0].start+1,o[1].stop,o[0].stop
        t=int(x1==1 or y1==1 or x2==W or y2==H); d=int(s<40)
        xml.append(f'<object><name>mitochondria</name><truncated>{t}</truncated><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>')
    xml.append('</annotation>'); open(f'{R}/annotations/{name}.xml','w').write('\n'.join(xml)+'\n')
    print(name,W,H,n,[int(s) for s in sizes])
