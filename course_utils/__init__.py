"""course_utils: the small shared package behind the "Seeing inside CNNs" lessons.

One module per concern; import the one you need:

- ``scenes``: synthetic shape scenes with ground-truth masks
- ``images``: load any image as RGB; scikit-image's sample photos
- ``coursenet``: the course model's architecture
- ``models``: load the course model and ImageNet models by name
- ``hooks``: layer lookup, the model guard, activations and gradients, ReLU backward rules
- ``saliency``: vanilla gradient, guided backprop, deconvnet, SmoothGrad (lesson 04)
- ``optvis``: activation maximization: parameterizations, transforms, objectives (lesson 03)
- ``cam``: CAM, Grad-CAM, Guided Grad-CAM, upsampling and normalization (lessons 05–07)
- ``evaluation``: pointing game, energy inside the mask, deletion/insertion, sanity checks (lessons 09–10)
- ``features``: feature maps, layer shapes, display normalizations (lesson 01)
- ``filters``: filter weights as pictures and statistics, a random twin (lesson 02)
- ``plotting``: pure drawing functions (take ``ax=``, return the figure)
- ``widgets``: the explorers (controls + one picture)
- ``tensorboard``: write graphs and images for TensorBoard, read them back
- ``checks``: exercise checks that print what is right and what is off
- ``train``: ``python -m course_utils.train`` retrains the course model
- ``download``: ``python -m course_utils.download`` fetches ImageNet weights

Importing it changes nothing: no seeds, no matplotlib settings, no downloads.
"""

__version__ = "0.1.0"
