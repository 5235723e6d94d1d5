"""What runs images, behind one interface: Docker today (docker-py is imported only here)."""
