from lnn_nav.cli import main

raise SystemExit(main())
