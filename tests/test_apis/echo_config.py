# EchoDetector (tests/test_apis/echo_detector.py) with the demo data's test pipeline.
_base_ = ['../../configs/_base_/datasets/demo_detection.py']
custom_imports = dict(imports=['echo_detector'], allow_failed_imports=False)
model = dict(type='EchoDetector', num_classes=5)
test_cfg = None
