"""The app on top of the stages: the command line (`prm`), the one list of stage commands, `prm run`, its
run report, and `prm experiment ablation`. The only code that imports the stage packages
(`prm.data_synthesis`, `prm.train`, `prm.eval`); nothing below imports it."""
