from kerastune_kit.cli import main

raise SystemExit(main())
