"""labkit: the CIFAR-10 coursework lab's shared code. Stage by stage: data.py (decode once, augment
whole batches), models/, training/ (config, loop, checkpoints), runs/ (results/<run>/), robustness/
(06_analysis), reporting/ (report.md), notebook/ (what the notebooks call); the commands are
train, tune, report, bench and doctor (`python -m labkit.<name>`)."""
