// The registration file of the SAI-Det compiled kernels: their schemas under torch.ops.sai_det
// (the CPU and CUDA kernels register their implementations in csrc/<op>/) and the Python module
// mmdet._ext, which exposes WITH_CUDA. mmdet/ops/library.py serves the ops torch.ops.sai.* with
// them (its 'compiled' backend); the Python wrappers in mmdet/ops/sparse.py check the arguments.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(sai_det, m) {
  m.def("active_positions(Tensor mask) -> (Tensor, Tensor)");
  m.def(
      "sparse_conv(Tensor x, Tensor weight, Tensor indices, Tensor count, int stride, int padding, int dilation, "
      "Tensor? scale, Tensor? bias, bool relu) -> Tensor");
  m.def(
      "sparse_deform_conv(Tensor x, Tensor offset, Tensor weight, Tensor indices, Tensor count, int stride, "
      "int padding, int dilation, Tensor? scale, Tensor? bias, bool relu) -> Tensor");
  m.def(
      "sparse_interpolate(Tensor rows, Tensor indices, Tensor count, Tensor mask, Tensor sigma, int kernel_size, "
      "Tensor? bias, Tensor? residual, bool relu) -> Tensor");
  m.def("tap_sum(Tensor taps, Tensor? bias, int stride) -> Tensor");  // CPU only (CUDA: Triton)
  m.def(  // CPU only (CUDA: the offsets run densely)
      "sparse_tap_conv(Tensor x, Tensor weight, Tensor? bias, Tensor indices, Tensor count, int stride) -> Tensor");
  m.def("eval_mask(Tensor p, Tensor u, float temperature, int grid_interval) -> Tensor");  // CPU (CUDA: Triton)
  m.def(  // CPU only: torchvision's RoIAlign over chunks of the RoIs in parallel (CUDA: torchvision's)
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int output_size, int sampling_ratio, bool aligned) "
      "-> Tensor");
}

static struct PyModuleDef ext_module = {PyModuleDef_HEAD_INIT, "_ext",
                                        "SAI-Det compiled sparse ops (registered as torch.ops.sai_det.*).", -1, nullptr};

PyMODINIT_FUNC PyInit__ext(void) {
  PyObject* module = PyModule_Create(&ext_module);
  if (module == nullptr) return nullptr;
#ifdef WITH_CUDA
  PyObject* with_cuda = Py_True;
#else
  PyObject* with_cuda = Py_False;
#endif
  if (PyModule_AddObjectRef(module, "WITH_CUDA", with_cuda) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
