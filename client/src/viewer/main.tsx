import "./viewer.css";

import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { Provider } from "urql";

import { createGraphqlClient } from "../shared/client";
import { App } from "./App";
import { installGlobalErrorHandlers } from "./fatal";

installGlobalErrorHandlers();
const container = document.getElementById("root");
if (container === null) throw new Error("viewer: #root is missing from index.html");
createRoot(container).render(
  <StrictMode>
    <Provider value={createGraphqlClient()}>
      <App />
    </Provider>
  </StrictMode>,
);
