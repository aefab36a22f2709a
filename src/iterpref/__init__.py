"""iterpref: IterPref (focal preference learning for code generation via iterative debugging) as a DVC pipeline."""
