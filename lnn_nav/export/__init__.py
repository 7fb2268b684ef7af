"""Export a policy to onboard controllers: ONNX for the whole step, C99 for the
LTC head (with golden vectors and a harness), metadata with SHA-256s, and a
README, in one bundle directory (`export_bundle`, `verify_bundle`)."""
