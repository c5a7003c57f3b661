"""robseg_lib: reliable evaluation (SEA) and fast training (PIR-AT) of robust semantic segmentation models.

Reference reproduction of Croce, Singh, Hein, "Towards Reliable Evaluation and Fast Training of Robust
Semantic Segmentation Models" (ECCV 2024).
"""

__version__ = "0.1.0"
