"""The application on top of the library: the command line, the training job,
built-in data sets, plots and the seed-article demo. The library never imports it."""
