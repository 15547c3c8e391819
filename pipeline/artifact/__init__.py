"""What is saved and served: the model as plain numpy arrays (lines, product codes,
promises), readable with numpy alone by the service and by training."""
