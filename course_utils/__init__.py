"""course_utils: the small shared package behind the "Seeing inside CNNs" lessons.

One module per concern; import the one you need:

- ``scenes``: synthetic shape scenes with ground-truth masks
- ``images``: load any image as RGB; scikit-image's sample photos
- ``coursenet``: the course model's architecture
- ``models``: the model registry (one record per model) and loading by name
- ``hooks``: layer lookup, the model guard, activations and gradients
- ``relu_rules``: the ReLU backward rules of lesson 04 (plain, guided, deconvnet)
- ``targets``: what a target means (class, list, None, function) and the input check
- ``saliency``: vanilla gradient, guided backprop, deconvnet, SmoothGrad (lesson 04); Input × Gradient,
  Integrated Gradients (lesson 11)
- ``optvis``: activation maximization: parameterizations, transforms, objectives (lesson 03)
- ``cam``: CAM, Grad-CAM, Guided Grad-CAM, upsampling and normalization (lessons 05–07); Grad-CAM++,
  XGrad-CAM, LayerCAM, HiResCAM (lesson 11)
- ``gradient_free``: Score-CAM, Ablation-CAM, Eigen-CAM, occlusion: no gradient, other inputs (lesson 11)
- ``methods``: the method registry: every explanation method by name, sharing passes
- ``evaluation``: pointing game, energy inside the mask, deletion/insertion, sanity checks (lessons 09–10)
- ``leaderboard``: every method on every measure of ``evaluation``, one table per model (lesson 11)
- ``features``: feature maps, layer shapes, display normalizations (lesson 01)
- ``filters``: filter weights as pictures and statistics, a random twin (lesson 02)
- ``plotting``: pure drawing functions (take ``ax=``, return the figure)
- ``figures``: each explorer's picture as a function a lesson can call too
- ``widgets``: the explorers (controls + one picture)
- ``tensorboard``: write graphs and images for TensorBoard, read them back
- ``checks``: exercise checks that print what is right and what is off
- ``train``: ``python -m course_utils.train`` retrains the course model
- ``download``: ``python -m course_utils.download`` fetches ImageNet weights

Importing it changes nothing: no seeds, no matplotlib settings, no downloads.
"""

__version__ = "0.1.0"
