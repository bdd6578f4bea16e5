// HubSpot's entry point for the card: hand the record context and hubspot.fetch to the view.
import React from "react";
import { hubspot } from "@hubspot/ui-extensions";
import { AccoilCardView } from "./AccoilCardView.jsx";
import { BACKEND_URL } from "./config.js";

hubspot.extend(({ context }) => (
  <AccoilCardView context={context} fetcher={hubspot.fetch} backendUrl={BACKEND_URL} />
));
