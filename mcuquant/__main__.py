from mcuquant.cli import main

raise SystemExit(main())
