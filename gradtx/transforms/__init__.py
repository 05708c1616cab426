"""Composable transforms, one module per family."""
