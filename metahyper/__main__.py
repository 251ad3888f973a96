"""``python -m metahyper`` (also what ``torchrun -m metahyper`` runs)."""

from metahyper.cli import main

if __name__ == "__main__":
    main()
