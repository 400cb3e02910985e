"""Loading models: names to modules, checkpoint reading and fitting, input wrappers, the model store."""
